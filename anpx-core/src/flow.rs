//! Per-request flow control (the `flow-control` extension): each body — a
//! request's, gateway → receiver, and a response's, receiver → gateway —
//! has its own credit window, as HTTP/2 streams do, so one body nobody reads
//! holds at most a window of memory and never stalls the other requests on
//! the connection. The rules are in docs/PROTOCOL.md.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::frame::{body_len, MAX_WINDOW};

/// Body bytes a sender may send for one message before any window update:
/// the credit each side starts with, per request and direction.
pub const INITIAL_WINDOW: u64 = 1 << 20;

/// A reader announces credit once this much was consumed and not yet
/// announced: a quarter window keeps the pipe full without an update per
/// frame.
pub const UPDATE_THRESHOLD: u64 = INITIAL_WINDOW / 4;

/// The peer broke the flow-control rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// It sent more body bytes than the window allowed.
    #[error("{sent} body bytes sent with only {window} of window")]
    Exceeded {
        /// Bytes in the frame.
        sent: u64,
        /// Window left before it.
        window: u64,
    },
    /// Its window updates opened more than 2^31-1 bytes.
    #[error("window updates opened {0} bytes, over 2^31-1")]
    Overflow(u64),
}

/// The sending side: frames wait here until the peer's credit covers their
/// body bytes. Frames without body bytes (the head, an empty final chunk)
/// only wait for those queued before them.
#[derive(Debug)]
pub(crate) struct SendQueue {
    credit: u64,
    frames: VecDeque<(Bytes, u64)>,
    queued: u64,
    /// The writer's last piece left bytes waiting for credit: it was told
    /// to wait, and is told once when nothing waits any more
    /// ([`SendQueue::take_writable`]).
    stalled: bool,
}

impl SendQueue {
    pub(crate) fn new() -> Self {
        SendQueue {
            credit: INITIAL_WINDOW,
            frames: VecDeque::new(),
            queued: 0,
            stalled: false,
        }
    }

    /// The writer gave a piece: when bytes wait for credit after it, the
    /// writer waits too.
    pub(crate) fn note_write(&mut self) {
        if self.queued > 0 {
            self.stalled = true;
        }
    }

    /// True once per stall, when the writer waited and credit has since
    /// sent everything: it may give more.
    pub(crate) fn take_writable(&mut self) -> bool {
        let writable = self.stalled && self.queued == 0;
        if writable {
            self.stalled = false;
        }
        writable
    }

    /// Queues an encoded frame.
    pub(crate) fn push(&mut self, frame: Bytes) {
        let n = body_len(&frame);
        self.queued += n;
        self.frames.push_back((frame, n));
    }

    /// Adds the peer's window update.
    pub(crate) fn grant(&mut self, increment: u32) -> Result<(), FlowError> {
        self.credit += u64::from(increment);
        if self.credit > MAX_WINDOW {
            return Err(FlowError::Overflow(self.credit));
        }
        Ok(())
    }

    /// The next frame the credit covers, charged against it.
    pub(crate) fn pop_ready(&mut self) -> Option<Bytes> {
        let &(_, n) = self.frames.front()?;
        if n > self.credit {
            return None;
        }
        self.credit -= n;
        self.queued -= n;
        self.frames.pop_front().map(|(f, _)| f)
    }

    /// Body bytes waiting for credit.
    pub(crate) fn queued(&self) -> u64 {
        self.queued
    }

    /// True when no frame waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops whatever waits (the message ended some other way).
    pub(crate) fn clear(&mut self) {
        self.frames.clear();
        self.queued = 0;
        self.stalled = false;
    }
}

/// The receiving side: what the peer may still send, and what was consumed
/// but not yet announced.
#[derive(Debug)]
pub(crate) struct RecvWindow {
    open: u64,
    unannounced: u64,
}

impl RecvWindow {
    pub(crate) fn new() -> Self {
        RecvWindow {
            open: INITIAL_WINDOW,
            unannounced: 0,
        }
    }

    /// A frame with `n` body bytes arrived.
    pub(crate) fn receive(&mut self, n: u64) -> Result<(), FlowError> {
        if n > self.open {
            return Err(FlowError::Exceeded {
                sent: n,
                window: self.open,
            });
        }
        self.open -= n;
        Ok(())
    }

    /// `n` received bytes were consumed; returns the increment to announce
    /// when one is due. Never opens more than was received.
    pub(crate) fn consumed(&mut self, n: u64) -> Option<u32> {
        let outstanding = INITIAL_WINDOW - self.open - self.unannounced;
        self.unannounced += n.min(outstanding);
        if self.unannounced < UPDATE_THRESHOLD {
            return None;
        }
        let increment = self.unannounced;
        self.unannounced = 0;
        self.open += increment;
        Some(increment as u32)
    }
}

/// Both windows of one request, on either side.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) send: SendQueue,
    pub(crate) recv: RecvWindow,
}

impl Flow {
    pub(crate) fn new() -> Self {
        Flow {
            send: SendQueue::new(),
            recv: RecvWindow::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkStream;
    use crate::frame::MessageKind;

    fn body_frames(total: usize, chunk: usize) -> Vec<Bytes> {
        let mut s = ChunkStream::new(MessageKind::Response, "r".into(), chunk);
        let mut out = Vec::new();
        s.write(None, &vec![7u8; total], true, &mut out).unwrap();
        out
    }

    #[test]
    fn send_queue_holds_frames_past_the_credit() {
        let mut q = SendQueue::new();
        let frames = body_frames(3 * INITIAL_WINDOW as usize, 64 * 1024);
        for f in &frames {
            q.push(f.clone());
        }
        let mut sent = 0u64;
        while let Some(f) = q.pop_ready() {
            sent += body_len(&f);
        }
        assert!(sent <= INITIAL_WINDOW && sent > INITIAL_WINDOW - 64 * 1024);
        assert_eq!(q.queued(), 3 * INITIAL_WINDOW - sent);
        q.grant(INITIAL_WINDOW as u32).unwrap();
        while let Some(f) = q.pop_ready() {
            sent += body_len(&f);
        }
        assert!(sent <= 2 * INITIAL_WINDOW);
        q.grant(INITIAL_WINDOW as u32).unwrap();
        q.grant(INITIAL_WINDOW as u32).unwrap();
        while let Some(f) = q.pop_ready() {
            sent += body_len(&f);
        }
        assert_eq!(sent, 3 * INITIAL_WINDOW);
        assert!(q.is_empty());
        assert_eq!(q.queued(), 0);
        assert!(matches!(q.grant(u32::MAX), Err(FlowError::Overflow(_))));
    }

    #[test]
    fn recv_window_announces_what_was_consumed() {
        let mut w = RecvWindow::new();
        w.receive(INITIAL_WINDOW).unwrap();
        assert!(matches!(
            w.receive(1),
            Err(FlowError::Exceeded { sent: 1, window: 0 })
        ));
        assert_eq!(w.consumed(UPDATE_THRESHOLD - 1), None);
        assert_eq!(w.consumed(1), Some(UPDATE_THRESHOLD as u32));
        w.receive(UPDATE_THRESHOLD).unwrap();
        assert!(w.receive(1).is_err());
        // Claiming to have consumed more than arrived opens nothing extra.
        assert_eq!(w.consumed(10 * INITIAL_WINDOW), Some(INITIAL_WINDOW as u32));
        assert_eq!(w.consumed(INITIAL_WINDOW), None);
        w.receive(INITIAL_WINDOW).unwrap();
    }
}
