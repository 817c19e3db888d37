//! Frames → whole messages, for callers that want bodies in one piece.

use crate::id_map::IdMap;
use std::time::Instant;

use bytes::Bytes;

use super::concat;
use super::error::ChunkError;
use super::reassembler::{Reassembler, ReassemblyLimits};
use crate::frame::Frame;
use crate::message::{Head, Message, RequestId};

/// Collects the parts a [`Reassembler`] releases into complete [`Message`]s.
///
/// The whole body is held in memory, as the reference does; the gateway and
/// receiver state machines stream instead and use the [`Reassembler`] directly.
#[derive(Debug)]
pub struct MessageCollector {
    reassembler: Reassembler,
    started: IdMap<RequestId, (Head, Vec<Bytes>)>,
}

impl MessageCollector {
    /// An empty collector.
    pub fn new(limits: ReassemblyLimits) -> Self {
        MessageCollector {
            reassembler: Reassembler::new(limits),
            started: IdMap::default(),
        }
    }

    /// Takes one frame; returns the message it completes, if any.
    pub fn push(&mut self, now: Instant, frame: Frame) -> Result<Option<Message>, ChunkError> {
        let out = match self.reassembler.push(now, frame) {
            Ok(out) => out,
            Err(e) => {
                self.started.remove(e.request_id());
                return Err(e);
            }
        };
        if let Some(head) = out.head {
            self.started
                .insert(out.request_id.clone(), (head, Vec::new()));
        }
        // Before its head a message's body is held inside the reassembler,
        // so pieces only ever arrive for a started message.
        if let Some((_, pieces)) = self.started.get_mut(&out.request_id) {
            pieces.extend(out.body);
        }
        if !out.end {
            return Ok(None);
        }
        let Some((head, pieces)) = self.started.remove(&out.request_id) else {
            return Ok(None);
        };
        Ok(Some(Message {
            request_id: out.request_id,
            head,
            body: concat(pieces),
        }))
    }

    /// Drops messages stale at `now`; returns their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<RequestId> {
        let gone = self.reassembler.expire(now);
        for id in &gone {
            self.started.remove(id);
        }
        gone
    }

    /// Number of messages in progress.
    pub fn in_progress(&self) -> usize {
        self.reassembler.in_progress()
    }
}
