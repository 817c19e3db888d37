//! Credit-based flow control for body pieces carried over NATS: a sender
//! may have at most a window of pieces unacknowledged, so a slow reader
//! bounds what sits in NATS (and in its slow-consumer buffers) for one
//! request to `window × MAX_PIECE` bytes.

/// Largest body piece in one NATS message: well under NATS's default
/// 1 MiB payload limit, and the same as the default frame size.
pub(crate) const MAX_PIECE: usize = 64 * 1024;

/// Pieces a sender may have in flight before it needs credit: the initial
/// credit of every forwarded request, in each direction, which both
/// gateways assume.
pub const DEFAULT_WINDOW: u64 = 16;

/// The sending side: numbers pieces and stops at the credit limit.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    next: u64,
    limit: u64,
}

impl Window {
    /// A sender that may send `window` pieces before the first credit.
    pub(crate) fn new(window: u64) -> Self {
        Window {
            next: 0,
            limit: window.max(1),
        }
    }

    /// The sequence number of the next piece, if credit allows sending it.
    pub(crate) fn try_send(&mut self) -> Option<u64> {
        (self.next < self.limit).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Whether a piece may be sent now.
    pub(crate) fn can_send(&self) -> bool {
        self.next < self.limit
    }

    /// The reader allows pieces numbered below `upto`. Credit never shrinks.
    pub(crate) fn handle_credit(&mut self, upto: u64) {
        self.limit = self.limit.max(upto);
    }
}

/// A piece arrived out of order: NATS dropped one (core NATS delivery is at
/// most once, and a slow consumer loses messages), so the body is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("body piece {got} arrived where {expected} was due: a piece was lost")]
pub(crate) struct SequenceGap {
    /// The sequence number due.
    pub(crate) expected: u64,
    /// The one that came.
    pub(crate) got: u64,
}

/// The receiving side: checks order and says when to grant more credit.
#[derive(Debug, Clone)]
pub(crate) struct Intake {
    expected: u64,
    granted: u64,
    window: u64,
}

impl Intake {
    /// A reader granting `window` pieces at a time (the sender's initial
    /// window must be the same).
    pub(crate) fn new(window: u64) -> Self {
        let window = window.max(1);
        Intake {
            expected: 0,
            granted: window,
            window,
        }
    }

    /// Takes piece `seq`. `Ok(Some(upto))`: send a credit for pieces below
    /// `upto` (granted once half the window is used, so the sender rarely
    /// waits and credits cost one message per half window).
    pub(crate) fn accept(&mut self, seq: u64) -> Result<Option<u64>, SequenceGap> {
        if seq != self.expected {
            return Err(SequenceGap {
                expected: self.expected,
                got: seq,
            });
        }
        self.expected += 1;
        if self.granted - self.expected <= self.window / 2 {
            self.granted = self.expected + self.window;
            Ok(Some(self.granted))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_lets_the_sender_go_on() {
        let mut tx = Window::new(2);
        let mut rx = Intake::new(2);
        assert_eq!(tx.try_send(), Some(0));
        assert_eq!(tx.try_send(), Some(1));
        assert_eq!(tx.try_send(), None, "out of credit");
        // Half the window used: credit up to seq 3.
        assert_eq!(rx.accept(0), Ok(Some(3)));
        tx.handle_credit(3);
        assert_eq!(tx.try_send(), Some(2));
    }

    #[test]
    fn gaps_are_reported() {
        let mut rx = Intake::new(4);
        assert_eq!(rx.accept(0), Ok(None));
        assert_eq!(
            rx.accept(2),
            Err(SequenceGap {
                expected: 1,
                got: 2
            })
        );
    }

    #[test]
    fn a_sender_following_credits_never_exceeds_the_window() {
        for window in [1, 2, 3, 16] {
            let mut tx = Window::new(window);
            let mut rx = Intake::new(window);
            let mut in_flight = std::collections::VecDeque::new();
            let mut delivered = 0;
            while delivered < 200 {
                while let Some(seq) = tx.try_send() {
                    in_flight.push_back(seq);
                    assert!(in_flight.len() as u64 <= window);
                }
                let seq = in_flight.pop_front().expect("credit stalled");
                if let Some(upto) = rx.accept(seq).unwrap() {
                    tx.handle_credit(upto);
                }
                delivered += 1;
            }
        }
    }

    #[test]
    fn credit_never_shrinks() {
        let mut tx = Window::new(4);
        tx.handle_credit(2);
        assert!((0..4).all(|_| tx.try_send().is_some()));
        assert!(!tx.can_send());
    }
}
