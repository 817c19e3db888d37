//! What a receiver connection holds of messages still arriving, reported
//! to the gateway's budgets as it grows, so that they see a message
//! before it is whole.

use super::READ_BUFFER_SIZE;

/// Bytes of a message still arriving that are not reported: a frame's
/// header and what was read past a message's end, both within the read
/// buffer. Bounded so that a message at the size limit is not charged
/// past it.
pub const UNCHARGED: u64 = READ_BUFFER_SIZE as u64;
/// The count is reported in steps of this size, not on every read, so a
/// message arriving takes the gateway's lock only every few reads. What a
/// connection holds uncharged is below `UNCHARGED + REPORT_STEP` (24 KiB)
/// besides its read buffer; SECURITY.md adds it up per connection.
pub const REPORT_STEP: u64 = 16 * 1024;

/// The count last reported of one connection's arriving bytes.
#[derive(Debug, Default)]
pub struct Arriving {
    reported: u64,
}

impl Arriving {
    /// Nothing reported yet.
    pub fn new() -> Self {
        Arriving::default()
    }

    /// The connection holds `held` bytes of messages not whole
    /// ([`WsSocket::arriving`](super::WsSocket::arriving)); returns the
    /// count to report if it changed by a step.
    pub fn update(&mut self, held: u64) -> Option<u64> {
        let arriving = held.saturating_sub(UNCHARGED);
        let stepped = arriving / REPORT_STEP * REPORT_STEP;
        (stepped != self.reported).then(|| {
            self.reported = stepped;
            stepped
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_arriving_is_reported_in_steps_past_the_free_part() {
        let mut arriving = Arriving::new();
        assert_eq!(arriving.update(UNCHARGED), None, "the first part is free");
        assert_eq!(
            arriving.update(UNCHARGED + REPORT_STEP - 1),
            None,
            "less than a step"
        );
        assert_eq!(arriving.update(UNCHARGED + REPORT_STEP), Some(REPORT_STEP));
        assert_eq!(
            arriving.update(UNCHARGED + REPORT_STEP),
            None,
            "reported once"
        );
        assert_eq!(
            arriving.update(UNCHARGED + 3 * REPORT_STEP + 5),
            Some(3 * REPORT_STEP)
        );
        // The message is whole: nothing arrives any more.
        assert_eq!(arriving.update(0), Some(0));
        assert_eq!(arriving.update(100), None);
    }

    #[test]
    fn what_is_not_charged_stays_under_the_documented_bound() {
        // SECURITY.md counts 8 KiB read buffer + 8 KiB free + a step under
        // 16 KiB for what a receiver connection holds uncharged.
        assert!(READ_BUFFER_SIZE as u64 + UNCHARGED + REPORT_STEP <= 32 * 1024);
    }
}
