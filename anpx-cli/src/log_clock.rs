//! The time at the start of a text log line.
//!
//! `tracing-subscriber`'s `SystemTime` turns the clock into a calendar date
//! and writes its seven parts through `fmt` for every line: about 2 400
//! instructions, a sixth of a request's log line and 1.5% of a small
//! request through `anpx both` (`benches/instructions.sh`). [`LogClock`]
//! writes the same bytes, and keeps each thread's date and time of day for
//! as long as the second lasts: a line then costs the clock read and six
//! digits.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::UNIX_EPOCH;

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, as `tracing-subscriber`'s
/// `SystemTime` writes it. Times it does not write in this form (before
/// 1970, after 9999) are handed to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogClock;

/// A thread's last second: its Unix time and its text up to the seconds.
struct Second {
    unix: u64,
    text: String,
}

thread_local! {
    static SECOND: RefCell<Option<Second>> = const { RefCell::new(None) };
}

impl FormatTime for LogClock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let Ok(since) = std::time::SystemTime::now().duration_since(UNIX_EPOCH) else {
            return SystemTime.format_time(w);
        };
        let unix = since.as_secs();
        let written = SECOND.with_borrow_mut(|second| {
            if second.as_ref().is_none_or(|s| s.unix != unix) {
                *second = second_text(unix).map(|text| Second { unix, text });
            }
            let Some(second) = second else {
                return None;
            };
            Some(
                w.write_str(&second.text)
                    .and_then(|()| write_fraction(w, since.subsec_micros())),
            )
        });
        written.unwrap_or_else(|| SystemTime.format_time(w))
    }
}

/// `.ffffffZ`: the microseconds, six digits.
fn write_fraction(w: &mut Writer<'_>, micros: u32) -> fmt::Result {
    let mut digits = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
    let mut rest = micros;
    for digit in digits[1..7].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    // Only ASCII digits, a dot and a letter were written.
    w.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second, when its year has four digits.
fn second_text(unix: u64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).ok()?).ok()?;
    if at.year() > 9999 {
        return None;
    }
    let mut text = String::with_capacity(19);
    write!(
        text,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
    .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(clock: &impl FormatTime) -> String {
        let mut text = String::new();
        clock.format_time(&mut Writer::new(&mut text)).unwrap();
        text
    }

    #[test]
    fn seconds_are_written_as_the_calendar_has_them() {
        // Dates from Python's datetime: the epoch, a leap day, the ends
        // of a day and of the last four-digit year.
        for (unix, text) in [
            (0, "1970-01-01T00:00:00"),
            (951_782_400, "2000-02-29T00:00:00"),
            (951_868_799, "2000-02-29T23:59:59"),
            (1_796_601_599, "2026-12-06T23:59:59"),
            (4_102_444_800, "2100-01-01T00:00:00"),
            (253_402_300_799, "9999-12-31T23:59:59"),
        ] {
            assert_eq!(second_text(unix).as_deref(), Some(text), "{unix}");
        }
        assert_eq!(second_text(253_402_300_800), None, "year 10000");
        assert_eq!(second_text(u64::MAX), None);
    }

    #[test]
    fn fractions_have_six_digits() {
        for (micros, text) in [(0, ".000000Z"), (7, ".000007Z"), (999_999, ".999999Z")] {
            let mut out = String::new();
            write_fraction(&mut Writer::new(&mut out), micros).unwrap();
            assert_eq!(out, text);
        }
    }

    #[test]
    fn a_stamp_is_the_one_tracing_subscriber_writes() {
        // Read one after the other, the two clocks agree to the second
        // unless a second ended in between: then they agree on the next try.
        let agreed = (0..3).any(|_| {
            let ours = stamp(&LogClock);
            let theirs = stamp(&SystemTime);
            assert_eq!(ours.len(), theirs.len(), "{ours} / {theirs}");
            assert!(ours.ends_with('Z') && ours.as_bytes()[19] == b'.', "{ours}");
            ours[..19] == theirs[..19]
        });
        assert!(agreed, "{} / {}", stamp(&LogClock), stamp(&SystemTime));
    }
}
