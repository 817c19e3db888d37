//! RFC 3339 timestamps as the DID-WBA header carries them
//! (`2026-11-22T01:35:42Z`).
//!
//! A strict hand-written parser: the header needs one date format, and a
//! date crate would be the largest dependency of the core for it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::AuthError;

const SECS_PER_DAY: i64 = 86_400;

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
///
/// Lower-case `t` and `z` are accepted as RFC 3339 allows; leap seconds
/// (`:60`) are not, as the reference's parser refuses them too.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::parse_timestamp;
/// let t = parse_timestamp("2026-11-22T01:35:28Z").unwrap();
/// assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_795_311_328));
/// assert!(parse_timestamp("2026-11-22 01:35:28").is_err());
/// ```
pub fn parse_timestamp(s: &str) -> Result<SystemTime, AuthError> {
    let bad = || AuthError::BadTimestamp(s.to_owned());
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(bad());
    }
    let year = digits(b, 0, 4).ok_or_else(bad)?;
    let month = digits(b, 5, 2).ok_or_else(bad)?;
    let day = digits(b, 8, 2).ok_or_else(bad)?;
    let hour = digits(b, 11, 2).ok_or_else(bad)?;
    let minute = digits(b, 14, 2).ok_or_else(bad)?;
    let second = digits(b, 17, 2).ok_or_else(bad)?;
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }

    let mut i = 19;
    let mut nanos: u32 = 0;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return Err(bad());
        }
        // Digits past the ninth are below a nanosecond: dropped, not rounded.
        for _ in n..9 {
            nanos *= 10;
        }
    }

    let offset_secs: i64 = match b.get(i..) {
        Some([b'Z' | b'z']) => 0,
        Some([sign @ (b'+' | b'-'), rest @ ..]) if rest.len() == 5 && rest[2] == b':' => {
            let oh = digits(rest, 0, 2).ok_or_else(bad)?;
            let om = digits(rest, 3, 2).ok_or_else(bad)?;
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let off = i64::from(oh * 3600 + om * 60);
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return Err(bad()),
    };

    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    from_unix(secs, nanos).ok_or_else(bad)
}

/// Writes `t` as `YYYY-MM-DDTHH:MM:SSZ`, whole seconds, as the reference
/// client does.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use anpx_core::auth::format_timestamp;
/// let t = UNIX_EPOCH + Duration::from_millis(1_795_311_328_900);
/// assert_eq!(format_timestamp(t).unwrap(), "2026-11-22T01:35:28Z");
/// ```
///
/// Times before 1970 or after 9999 are refused: a clock there is broken.
pub fn format_timestamp(t: SystemTime) -> Result<String, AuthError> {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| AuthError::BadTimestamp("a time before 1970".to_owned()))?
        .as_secs();
    let secs = i64::try_from(secs)
        .map_err(|_| AuthError::BadTimestamp(format!("{secs} s after 1970 is out of range")))?;
    let (year, month, day) = civil_from_days(secs.div_euclid(SECS_PER_DAY));
    if year > 9999 {
        return Err(AuthError::BadTimestamp(format!(
            "{secs} s after 1970 is after 9999"
        )));
    }
    let rem = secs.rem_euclid(SECS_PER_DAY);
    Ok(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    ))
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    b.get(at..at + n)?.iter().try_fold(0u32, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn from_unix(secs: i64, nanos: u32) -> Option<SystemTime> {
    let whole = if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs.unsigned_abs()))?
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?
    };
    whole.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`), valid for every year this module accepts.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both casts are of values proven small by the algorithm (1..=31, 1..=12).
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(s: &str) -> i64 {
        match parse_timestamp(s).unwrap().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            Err(e) => -(e.duration().as_secs() as i64),
        }
    }

    #[test]
    fn known_instants() {
        // Values computed independently (Python's datetime).
        assert_eq!(unix("2026-11-22T01:35:28Z"), 1_795_311_328);
        assert_eq!(unix("2000-02-29T23:59:59Z"), 951_868_799);
        assert_eq!(unix("1970-01-01T00:00:00Z"), 0);
        assert_eq!(unix("9999-12-31T23:59:59Z"), 253_402_300_799);
        assert_eq!(unix("1969-12-31T23:59:59Z"), -1);
        assert_eq!(unix("0001-01-01T00:00:00Z"), -62_135_596_800);
        assert_eq!(unix("2024-02-29T12:00:00+05:30"), 1_709_188_200);
        assert_eq!(unix("2024-02-29T06:30:00-00:00"), 1_709_188_200);
        assert_eq!(unix("2026-11-22t01:35:28z"), 1_795_311_328);
    }

    #[test]
    fn fractions() {
        let t = parse_timestamp("2026-11-22T01:35:28.25Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::new(1_795_311_328, 250_000_000)
        );
        let t = parse_timestamp("2026-11-22T01:35:28.1234567891234Z").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().subsec_nanos(),
            123_456_789
        );
        assert!(parse_timestamp("2026-11-22T01:35:28.Z").is_err());
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "2026-11-22",
            "2026-11-22T01:35:28",
            "2026-11-22 01:35:28Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T23:60:00Z",
            "2026-11-22T23:59:60Z",
            "2026-11-22T01:35:28+0000",
            "2026-11-22T01:35:28+24:00",
            "2026-11-22T01:35:28ZZ",
            "2026-11-22T01:35:28Z ",
            "+2026-11-22T01:35:28Z",
            "2026-1-22T01:35:28Z",
            "２０２６-11-22T01:35:28Z",
            "2026-11-22T01:35:2éZ",
        ] {
            assert!(parse_timestamp(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn leap_years() {
        assert!(parse_timestamp("2000-02-29T00:00:00Z").is_ok());
        assert!(parse_timestamp("2024-02-29T00:00:00Z").is_ok());
        assert!(parse_timestamp("2100-02-29T00:00:00Z").is_err());
    }

    #[test]
    fn civil_round_trip() {
        // Every day from year 0 to 10000, and that each is the day after the last.
        let first = days_from_civil(0, 1, 1);
        let last = days_from_civil(10_000, 12, 31);
        let mut prev = civil_from_days(first - 1);
        for d in first..=last {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
            let next_of_prev = if prev.2 < days_in_month(prev.0 as u32, prev.1) {
                (prev.0, prev.1, prev.2 + 1)
            } else if prev.1 < 12 {
                (prev.0, prev.1 + 1, 1)
            } else {
                (prev.0 + 1, 1, 1)
            };
            assert_eq!((y, m, dd), next_of_prev);
            prev = (y, m, dd);
        }
    }

    #[test]
    fn format_round_trip() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2026-11-22T01:35:28Z",
            "2000-02-29T23:59:59Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert_eq!(format_timestamp(parse_timestamp(s).unwrap()).unwrap(), s);
        }
        assert!(format_timestamp(UNIX_EPOCH - Duration::from_secs(1)).is_err());
        assert!(format_timestamp(UNIX_EPOCH + Duration::from_secs(253_402_300_800)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_timestamp(&s);
        }

        #[test]
        fn format_parse(secs in 0u64..253_402_300_800) {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let s = format_timestamp(t).unwrap();
            proptest::prop_assert_eq!(parse_timestamp(&s).unwrap(), t);
        }
    }
}
